# shellcheck shell=bash disable=SC2034
# Shared by scripts/test and scripts/demo (sourced, not run): find a Python >= 3.12 and keep a
# virtualenv for it up to date.
#
#   tandem_find_python [X.Y]     print the path of a working interpreter (exactly X.Y when given,
#                                else the best of $TANDEM_PYTHON_VERSIONS); return 1 with a hint
#   tandem_venv PYTHON EXTRAS [CONSTRAINTS]
#                                create/update the venv ($TANDEM_VENV or .venv-X.Y in the repo;
#                                .venv-X.Y-NAME with constraints/NAME.txt) and `pip install -e
#                                .[EXTRAS]` (under those constraints) when pyproject.toml or the
#                                constraints changed; sets TANDEM_VENV_DIR and TANDEM_VENV_PYTHON
#
# Set TANDEM_PYTHON=/path/to/python to skip the search.

TANDEM_ROOT=${TANDEM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
TANDEM_PYTHON_VERSIONS=${TANDEM_PYTHON_VERSIONS:-"3.14 3.13 3.12"}

tandem_log() { printf '%s\n' "$*" >&2; }

# True when $1 runs, is Python X.Y ($2) and can make a venv.
_tandem_python_works() {
    local python=$1 want=$2
    [ -n "$python" ] && [ -x "$python" ] || return 1
    "$python" -I -c "
import sys, venv, ensurepip
want = tuple(map(int, '$want'.split('.')))
sys.exit(0 if sys.version_info[:2] == want and sys.version_info >= (3, 12) else 1)
" >/dev/null 2>&1
}

# Every place an interpreter X.Y may live, best guess first (duplicates are harmless).
_tandem_python_candidates() {
    local version=$1 pyenv_root=${PYENV_ROOT:-$HOME/.pyenv} found
    echo "/opt/python$version/bin/python$version"
    found=$(command -v "python$version" 2>/dev/null) && echo "$found"
    # pyenv installs, newest patch release first (its shims fail unless the version is selected).
    if [ -d "$pyenv_root/versions" ]; then
        find "$pyenv_root/versions" -mindepth 3 -maxdepth 3 -path "*/versions/$version.*/bin/python$version" \
            2>/dev/null | sort -rV
    fi
    echo "/usr/local/bin/python$version"
    echo "/usr/bin/python$version"
}

_tandem_install_hint() {
    local wanted=$1 shared
    shared=$(cd "$TANDEM_ROOT/.." && pwd)/shared/python314.sh
    tandem_log ""
    tandem_log "No usable Python $wanted found (looked in /opt/pythonX.Y, PATH and ~/.pyenv/versions)."
    tandem_log "django-tandem needs Python 3.12 or newer (3.14 recommended). To get one, either"
    # The installer script exists only beside the project's own checkouts; a clone has none.
    if [ -f "$shared" ]; then
        tandem_log "  - run: sudo bash $shared"
        tandem_log "    (installs CPython 3.14 into /opt/python3.14), or"
    fi
    tandem_log "  - install it from https://www.python.org/downloads/ or your system's packages"
    tandem_log "    (Ubuntu: the deadsnakes PPA, apt-get install python3.14 python3.14-venv), or"
    tandem_log "  - install Python 3.12+ with pyenv: pyenv install 3.14   (or 3.12, 3.13), or"
    tandem_log "  - point TANDEM_PYTHON at one: TANDEM_PYTHON=/path/to/python3.13 ${TANDEM_COMMAND:-$0}"
    tandem_log "The interpreter needs its venv and ensurepip modules (Debian: apt-get install python3.X-venv)."
}

tandem_find_python() {
    local wanted=${1:-} version candidate versions
    if [ -n "${TANDEM_PYTHON:-}" ]; then
        version=$("$TANDEM_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || {
            tandem_log "TANDEM_PYTHON=$TANDEM_PYTHON does not run."
            return 1
        }
        if { [ -z "$wanted" ] || [ "$wanted" = "$version" ]; } && _tandem_python_works "$TANDEM_PYTHON" "$version"; then
            echo "$TANDEM_PYTHON"
            return 0
        fi
        tandem_log "TANDEM_PYTHON=$TANDEM_PYTHON is Python $version; wanted ${wanted:-3.12+} with venv support."
        return 1
    fi
    if [ -n "$wanted" ]; then
        if ! [[ "$wanted" =~ ^3\.[0-9]+$ ]]; then
            tandem_log "--python wants a version like 3.14, got '$wanted'."
            return 1
        fi
        if [ "${wanted#3.}" -lt 12 ]; then
            tandem_log "django-tandem needs Python 3.12 or newer; --python $wanted is too old."
            return 1
        fi
        versions=$wanted
    else
        versions=$TANDEM_PYTHON_VERSIONS
    fi
    for version in $versions; do
        while IFS= read -r candidate; do
            if _tandem_python_works "$candidate" "$version"; then
                echo "$candidate"
                return 0
            fi
        done < <(_tandem_python_candidates "$version")
    done
    _tandem_install_hint "${wanted:-3.12+}"
    return 1
}

# tandem_venv PYTHON EXTRAS ("" or "test") [CONSTRAINTS FILE]: a venv for PYTHON with this
# checkout installed (pinned by the constraints file, e.g. constraints/django-6.0.txt, when given).
tandem_venv() {
    local python=$1 extras=$2 constraints=${3:-} version venv spec stamp digest suffix=""
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ -n "$constraints" ]; then
        [ -f "$constraints" ] || { tandem_log "error: constraints file $constraints not found."; return 1; }
        suffix=-$(basename "$constraints" .txt)
    fi
    venv=${TANDEM_VENV:-$TANDEM_ROOT/.venv-$version$suffix}
    if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == tuple(map(int, "'"$version"'".split("."))) else 1)' 2>/dev/null; then
        tandem_log "error: $venv exists but is not a working Python $version venv; remove it or set TANDEM_VENV."
        return 1
    fi
    if [ ! -x "$venv/bin/python" ]; then
        tandem_log "creating venv $venv ($("$python" -V 2>&1), from $python)"
        "$python" -m venv "$venv" || return 1
    fi
    spec=.
    [ -n "$extras" ] && spec=".[$extras]"
    # Reinstall when pyproject.toml, the checkout or the interpreter changed since the last install.
    digest=$( { cat "$TANDEM_ROOT/pyproject.toml"; echo "$TANDEM_ROOT"; "$venv/bin/python" -VV;
        [ -z "$constraints" ] || cat "$constraints"; } | sha256sum | cut -d' ' -f1)
    stamp="$venv/.tandem-installed-${extras:-base}"
    local current=""
    [ -f "$stamp" ] && current=$(cat "$stamp")
    # A venv installed with [test] also serves the plain install.
    if [ -z "$extras" ] && [ -f "$venv/.tandem-installed-test" ] && [ "$(cat "$venv/.tandem-installed-test")" = "$digest" ]; then
        current=$digest
    fi
    if [ "$current" != "$digest" ]; then
        tandem_log "installing -e '$spec' into $venv (pyproject.toml changed or first run) ..."
        local log="$venv/.tandem-pip.log"
        local pin=()
        [ -z "$constraints" ] || pin=(-c "$constraints")
        if ! (cd "$TANDEM_ROOT" && "$venv/bin/python" -m pip install --disable-pip-version-check -e "$spec" "${pin[@]}") >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            tandem_log "error: pip install -e '$spec' failed in $venv (full log: $log)"
            return 1
        fi
        tandem_log "installed: $(grep -E '^Successfully installed' "$log" | cut -c1-300 || echo 'nothing new')"
        echo "$digest" >"$stamp"
    fi
    TANDEM_VENV_DIR=$venv
    TANDEM_VENV_PYTHON=$venv/bin/python
}
