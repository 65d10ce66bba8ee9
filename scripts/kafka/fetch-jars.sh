#!/usr/bin/env bash
# Fetch the Apache Kafka broker jars (kafka_2.13 4.3.1 + a log4j2 backend) from Maven
# Central into a cache directory, using the throw-away pom.xml beside this script.
#
#   scripts/kafka/fetch-jars.sh [DIR]
#
# DIR defaults to $SLAWATCH_KAFKA_LIBS, else $HOME/.cache/slawatch/kafka-4.3.1/libs.
# Does nothing when DIR already holds a complete copy for the current pom.xml (a marker
# file records the pom's checksum). The copy is made in a temporary directory and moved
# into place, so concurrent callers never see a half-filled DIR.
# Prints the libs directory on stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"
libs="${1:-${SLAWATCH_KAFKA_LIBS:-$HOME/.cache/slawatch/kafka-4.3.1/libs}}"
marker="$libs/.complete"
want="$(sha256sum "$pom" | cut -d' ' -f1)"

if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    echo "$libs"
    exit 0
fi

command -v mvn >/dev/null || { echo "fetch-jars: mvn not found (apt-get install maven)" >&2; exit 1; }
command -v java >/dev/null || { echo "fetch-jars: java not found (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }

parent="$(dirname "$libs")"
mkdir -p "$parent"
tmp="$(mktemp -d "$parent/.libs.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-jars: resolving Kafka jars into $libs ..." >&2
start=$SECONDS
# -f: the POM lives here, whatever the caller's working directory. Up to 3 tries: a
# transient registry hiccup should not fail a CI run.
for try in 1 2 3; do
    # Maven 3.8's console library writes colour resets (ESC[0m) even with
    # -Dstyle.color=never and -q; strip every escape sequence so a log file or CI output
    # shows plain text (pipefail keeps mvn's exit status).
    if mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed -u -e $'s/\x1b\\[[0-9;?]*[A-Za-z]//g' >&2; then
        break
    fi
    ((try < 3)) || { echo "fetch-jars: mvn failed 3 times" >&2; exit 1; }
    echo "fetch-jars: mvn failed (try $try); retrying in 5 s" >&2
    sleep 5
done
n=$(find "$tmp" -maxdepth 1 -name '*.jar' | wc -l)
if ! compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || ! compgen -G "$tmp/log4j-core-*.jar" >/dev/null; then
    echo "fetch-jars: copy-dependencies finished but kafka_2.13 / log4j-core jars are missing" >&2
    exit 1
fi
echo "$want" >"$tmp/.complete"

# Swap into place. If another process finished first with the same content, keep theirs.
if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    :
else
    old=""
    if [[ -e "$libs" ]]; then
        old="$(mktemp -d "$parent/.old.XXXXXX")"
        mv "$libs" "$old/" 2>/dev/null || true
    fi
    mv "$tmp" "$libs"
    tmp=""
    [[ -n "$old" ]] && rm -rf "$old"
fi
echo "fetch-jars: $n jars in $((SECONDS - start)) s" >&2
echo "$libs"
