#!/bin/bash
# The runner of the Windows cargo tests: `wine BINARY ARGS...`, whose exit
# status it returns unchanged. When a binary fails without being a test
# failure (the harness exits with 101 for those), it also says so and runs
# the binary once more with Wine's error messages on, which `WINEDEBUG=-all`
# hides: a launch that failed silently (exit 1, no output) was seen once
# and not reproduced, and the next one should leave a trace. (One cause of
# such failures was found since and removed: Wine without its preloader,
# see APT_PACKAGES in windows-env.sh.) The second run's result is only
# printed.
wine "$@"
rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 101 ]; then
    echo "wine-run: $1 exited with status $rc; Wine processes now:" >&2
    ps -eo pid,stat,etime,args | grep -i '[w]ine\|\.exe' >&2 || true
    echo "wine-run: the same again with WINEDEBUG=err+all:" >&2
    WINEDEBUG=err+all wine "$@" >&2
    echo "wine-run: that run exited with status $?" >&2
fi
exit "$rc"
