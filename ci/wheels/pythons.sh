# pythons.sh - sourced by build.sh and test.sh: the CPythons on this machine.
#
# Versions are minor versions, with a "t" for a free-threaded build: 3.9 ...
# 3.15, 3.14t.
#
# found_versions   prints the versions that python_for finds
# python_for 3.X   prints the path of a CPython 3.X: python3.X on PATH, else
#                  pyenv's newest 3.X.* ($PYENV_ROOT, default ~/.pyenv), else
#                  the launcher $PYTHON_TOOLS/python3.X prints it (the shared
#                  tools folder: a script that unpacks the interpreter once
#                  and prints its path; default ../shared/tools beside the
#                  repository)
# wheel_tags 3.X   prints the wheel's python and ABI tags: "cp315 cp315",
#                  "cp314 cp314t"

SUPPORTED_VERSIONS="3.9 3.10 3.11 3.12 3.13 3.14 3.14t 3.15"
PYTHON_TOOLS=${PYTHON_TOOLS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared/tools}

# The version a Python reports: "3.14t" for a free-threaded 3.14.
_version_of() {
    "$1" -c 'import sys, sysconfig; print("%d.%d" % sys.version_info[:2] + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))' 2>/dev/null
}

python_for() {
    local v=$1 candidate found="" tool=$PYTHON_TOOLS/python$1
    local candidates
    # pyenv's shims answer for every version pyenv has, enabled or not, and
    # then fail when run: only trust an interpreter that reports its version.
    candidates="$(command -v "python$v" 2>/dev/null) $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${v%t}".*/bin/"python$v" 2>/dev/null | sort -V -r)"
    if [ -x "$tool" ] && [ -f "$tool" ]; then
        candidates="$candidates $("$tool" 2>/dev/null)"
    fi
    for candidate in $candidates; do
        if [ "$(_version_of "$candidate")" = "$v" ]; then
            found=$candidate
            break
        fi
    done
    [ -n "$found" ] && echo "$found"
}

wheel_tags() {
    local v=$1 py
    py=cp${v%t}
    py=${py/./}
    echo "$py ${py}${v//[^t]/}"
}

found_versions() {
    local v out=()
    for v in $SUPPORTED_VERSIONS; do
        python_for "$v" >/dev/null && out+=("$v")
    done
    echo "${out[*]}"
}

# ci_versions: what .ci/run tests as wheels, besides the default python3
# (which `make test` already tests): the oldest GIL CPython found, the two
# newest (here 3.13, the newest pyenv has, and 3.15, the current release),
# and the newest free-threaded one, without repeats.
ci_versions() {
    local default v found gil=() ft=() out=()
    default=$(_version_of python3)
    read -r -a found <<<"$(found_versions)"
    for v in "${found[@]}"; do
        [ "$v" = "$default" ] && continue
        case $v in
            *t) ft+=("$v") ;;
            *) gil+=("$v") ;;
        esac
    done
    [ "${#gil[@]}" -gt 0 ] && out+=("${gil[0]}")
    [ "${#gil[@]}" -gt 2 ] && out+=("${gil[-2]}")
    [ "${#gil[@]}" -gt 1 ] && out+=("${gil[-1]}")
    [ "${#ft[@]}" -gt 0 ] && out+=("${ft[-1]}")
    echo "${out[*]}"
}

# wheel_versions: $WHEEL_PYTHONS, with "ci" meaning ci_versions and empty
# meaning every version found.
wheel_versions() {
    case ${WHEEL_PYTHONS:-} in
        "") found_versions ;;
        ci) ci_versions ;;
        *) echo "$WHEEL_PYTHONS" ;;
    esac
}
