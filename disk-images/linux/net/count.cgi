#!/bin/sh
# GET /cgi-bin/count: counts the requests the guest served (under /tmp/count) and answers the count.
while ! mkdir /tmp/count.lock 2>/dev/null; do usleep 1000; done
n=$(( $(cat /tmp/count 2>/dev/null || echo 0) + 1 ))
echo "$n" > /tmp/count
rmdir /tmp/count.lock
printf 'Content-Type: text/html\r\n\r\n'
printf '<!doctype html><meta http-equiv="refresh" content="1"><title>lockstep guest</title>'
printf '<h1>request %s</h1><p>served by the guest (%s)</p>\n' "$n" "$(uptime)"
