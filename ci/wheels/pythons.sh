# pythons.sh - sourced by build.sh and test.sh: the CPythons on this machine.
#
# found_versions   prints the minor versions (3.9 ... 3.14) that python_for finds
# python_for 3.X   prints the path of a CPython 3.X: python3.X on PATH, else
#                  pyenv's newest 3.X.* ($PYENV_ROOT, default ~/.pyenv)

SUPPORTED_VERSIONS="3.9 3.10 3.11 3.12 3.13 3.14"

python_for() {
    local v=$1 candidate found=""
    # pyenv's shims answer for every version pyenv has, enabled or not, and
    # then fail when run: only trust an interpreter that reports its version.
    for candidate in $(command -v "python$v" 2>/dev/null) \
        $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v" 2>/dev/null | sort -V -r); do
        if [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$v" ]; then
            found=$candidate
            break
        fi
    done
    [ -n "$found" ] && echo "$found"
}

found_versions() {
    local v out=()
    for v in $SUPPORTED_VERSIONS; do
        python_for "$v" >/dev/null && out+=("$v")
    done
    echo "${out[*]}"
}

# ci_versions: the oldest and newest CPython found other than the default
# python3 (which `make test` already tests), without repeats: what .ci/run
# tests as wheels.
ci_versions() {
    local default v found others=()
    default=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    read -r -a found <<<"$(found_versions)"
    for v in "${found[@]}"; do
        [ "$v" != "$default" ] && others+=("$v")
    done
    case ${#others[@]} in
        0) echo "" ;;
        1) echo "${others[0]}" ;;
        *) echo "${others[0]} ${others[-1]}" ;;
    esac
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
