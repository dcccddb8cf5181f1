"""Great Expectations validation of one day of data.

Modules: `suite` (the expectations, generated from the data contract), `runner` (`validate_day`: read the
day, run GX, the drift baseline, the image checks), `report` (`ValidationReport` and readable failures),
`docs` (the data-docs index page).
"""

from cscnn.tools.validation.report import ValidationReport
from cscnn.tools.validation.runner import validate_day

__all__ = ["ValidationReport", "validate_day"]
