"""Screenshots of the Airflow UI after `make demo`, taken in a real browser (docs/airflow_ui/README.md).

    eval "$(.venv/bin/cscnn airflow env)" && AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True \
        .venv/bin/airflow api-server --port 8793 &
    python docs/airflow_ui/screenshots.py --url http://127.0.0.1:8793 --out docs/airflow_ui

Needs Playwright (`pip install playwright`, any environment) and a Chromium (`apt-get install chromium`, or
`playwright install chromium`); neither is a dependency of the project. It opens the DAG's overview, its runs
list, the rejected day's run (its note), the report task's log and XCom of that run, and the trigger form with
every param left empty (printing whether its Trigger button is enabled), and saves one PNG each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DAG = "cscnn_daily"
REJECTED_RUN = "manual__2026-01-05T00:00:00+00:00"  # `make demo`'s day 5 arrives broken on purpose


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8793")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    run = REJECTED_RUN.replace("+", "%2B")
    pages = {
        "overview": f"/dags/{DAG}",
        "runs": f"/dags/{DAG}/runs",
        "rejected_run": f"/dags/{DAG}/runs/{run}",
        "rejected_report_log": f"/dags/{DAG}/runs/{run}/tasks/report",
        "rejected_report_xcom": f"/dags/{DAG}/runs/{run}/tasks/report/xcom",
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for name, path in pages.items():
            page.goto(args.url + path, wait_until="networkidle")
            page.wait_for_timeout(1500)
            page.screenshot(path=args.out / f"{name}.png")
            print(f"{name}: {args.url}{path}")
        page.goto(args.url + f"/dags/{DAG}", wait_until="networkidle")
        page.get_by_role("button", name="Trigger").first.click()
        page.wait_for_timeout(1500)
        page.screenshot(path=args.out / "trigger_form.png")
        dialog = page.get_by_role("dialog")
        submit = dialog.get_by_role("button", name="Trigger").last
        submit.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.screenshot(path=args.out / "trigger_form_end.png")
        state = "enabled" if submit.is_enabled() else "DISABLED"
        print(f"trigger_form: the Trigger button's form, every param left empty: its Trigger button is {state}")
        browser.close()


if __name__ == "__main__":
    main()
