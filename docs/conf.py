# Sphinx configuration of the μOmni site. tools/build_docs.py lays the pages out (README as the front page, the
# executed chapters in book order, the run's results) in a staging folder and builds it with this file: offline,
# from PyPI packages only, and nothing on the pages is fetched from the internet when they are read.
import os

project = "μOmni"
author = "muomni developers"
html_title = "μOmni, notebook first"

extensions = ["myst_nb", "sphinx.ext.githubpages"]      # githubpages: a .nojekyll file, so Pages serves _static/
nb_execution_mode = "off"                               # the pages show what the run executed, never re-run here
nb_output_stderr = "show"
nb_ipywidgets_js = {}                                   # widgets cannot run on a static page: load no widget JS
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "sphinx_book_theme"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,                         # each page's executed notebook, as built
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
    "extra_footer": f"Built from {os.environ.get('MUOMNI_SITE_FROM', 'executed notebooks')}.",
}
html_static_path = ["_static"]
html_css_files = ["muomni.css"]
html_last_updated_fmt = None
html_copy_source = True
html_show_sourcelink = False
