"""The HTML report (``blurdm-bench report``): :mod:`reports.build` renders ``reports/site/index.html``
from the pipeline's metric files and the paper's published numbers (``reports/published/``)."""
