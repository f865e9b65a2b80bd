"""One self-contained HTML page per export (or several), and the measured compatibility matrix.

A reader opens ``report.html`` from disk, on a workstation or a Jetson, with no network: the
plots are inline SVG drawn by matplotlib, the page comes from a Jinja2 template, there is no
script beyond the matrix page's sort and filter. Everything shown is read from the export folder
(``report.json``, the golden file, the graphs) or measured again from it; nothing needs torch.
"""
