"""Kubeflow pipelines of the daily loop: one lightweight component per `cscnn.daily.steps` step."""
