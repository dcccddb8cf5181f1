"""Entry points: the `cscnn` command, the demo driver and the embedded Airflow set-up."""
