#!/bin/sh
# Install the Debian packages Salvage needs, and only those dpkg says are missing.
# Used by `make deps` (and so by `make check`, `make demo`, .ci/run): a fresh machine must
# build and test with nothing installed by hand.
set -eu

PACKAGES="
build-essential pkg-config clang llvm
liblua5.4-dev lua5.4 lua-cjson libreadline-dev
libmariadb-dev mariadb-server mariadb-client
libcurl4-openssl-dev libssl-dev
libcmocka-dev lua-busted lua-check python3-cram tmux
qemu-utils python3-cs python3 xz-utils gzip curl procps
lvm2
debhelper dpkg-dev fakeroot lintian bash-completion man-db
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "deps: all $(echo $PACKAGES | wc -w) Debian packages present"
	exit 0
fi

echo "deps: installing missing Debian packages:$missing"
if [ "$(id -u)" != 0 ]; then
	echo "deps: not root; run as root or install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A machine that never ran apt-get update has no package lists.
if ! apt-get install -y -q --no-install-recommends $missing; then
	apt-get update -q
	apt-get install -y -q --no-install-recommends $missing
fi
# mariadb-server's postinst may start a system server; our tests run their own private one.
