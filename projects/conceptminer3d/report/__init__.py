"""The HTML report of a mining run (``WORK_DIR/report/index.html``): what was mined and why each
sample was chosen, built from the tables alone."""

from .builder import GALLERY_CHUNK, MAX_MAP_POINTS, REPORT_DIR, build_report

__all__ = ['GALLERY_CHUNK', 'MAX_MAP_POINTS', 'REPORT_DIR', 'build_report']
