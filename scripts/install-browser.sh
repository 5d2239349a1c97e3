#!/usr/bin/env bash
# Installs the headless browser the dashboard test drives
# (tests/tests/dashboard.rs): Debian's chromium and chromium-driver, unless
# /usr/bin/chromium and /usr/bin/chromedriver are already there. Run as
# root, or as a user who may use sudo. The test fails, rather than
# skipping, when the browser is missing.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "chromium and chromedriver are installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-browser.sh: /usr/bin/chromium or /usr/bin/chromedriver is missing;" >&2
    echo "install the Debian packages chromium and chromium-driver as root" >&2
    echo "(apt-get install -y chromium chromium-driver) or run this script as root" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser.sh: no apt-get here; install chromium and its chromedriver" >&2
    echo "so that /usr/bin/chromium and /usr/bin/chromedriver exist" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
# A CJK font so the screenshot shows the Chinese labels, not boxes (the
# test reads text from the page, so it does not depend on the font).
"${as_root[@]}" apt-get install -y chromium chromium-driver fonts-wqy-microhei

for bin in /usr/bin/chromium /usr/bin/chromedriver; do
    if [ ! -x "$bin" ]; then
        echo "install-browser.sh: $bin is still missing after apt-get install" >&2
        exit 1
    fi
done
echo "chromium and chromedriver are installed"
