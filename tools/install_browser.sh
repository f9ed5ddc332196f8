#!/bin/sh
# Debian's Chromium for the site's browser test (tests/test_docs.py, tools/check_site.py), installed when missing:
# as root, or through sudo when it needs no password. Where neither works, say so and carry on: the browser test
# then skips, except in CI (CI set), where it fails.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else echo "install_browser: Chromium is missing and this user cannot install it; run: sudo apt-get install chromium"; exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: Chromium is missing and there is no apt-get here; install chromium and put it on PATH"; exit 0
fi
echo "install_browser: installing Debian's chromium ..."
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
