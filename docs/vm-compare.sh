#!/bin/bash
# Bulwark (a job over the lab's 20 VMs) against restic and borg backing up
# the same datastore files: full, then incremental after 1% guest writes.
# Run from the repository root; needs restic and borg on PATH.
set -e
go build -o /tmp/bulwark ./cmd/bulwark
export PATH=$PATH:/usr/sbin:/sbin:$HOME/go/bin
pkill -f "/tmp/bulwark lab" || true
rm -rf /tmp/labcmp; mkdir -p /tmp/labcmp
TMPDIR=/tmp/labcmp /tmp/bulwark lab --vms 20 --disks 2 --disk-size 256 --datastores 3 --listen 127.0.0.1:8989 --guest-listen 127.0.0.1:8990 > /tmp/lab20.out 2>&1 &
for i in $(seq 1 180); do grep -q running /tmp/lab20.out && break; sleep 1; done
DS=$(ls -d /tmp/labcmp/govcsim-*/DC0-LocalDS_*)
export VC_PASSWORD=$(grep password: /tmp/lab20.out | awk '{print $2}')
TP=$(grep thumbprint: /tmp/lab20.out | awk '{print $2}')
export BULWARK_PASSWORD=pw RESTIC_PASSWORD=pw RESTIC_REPOSITORY=/tmp/restic-cmp
rm -rf $RESTIC_REPOSITORY /tmp/bw-cmp; restic init -q; /tmp/bulwark store init --store /tmp/bw-cmp >/dev/null
rm -rf /tmp/bw-state
/tmp/bulwark vcenter add lab --state /tmp/bw-state --url https://127.0.0.1:8989/sdk --username administrator@vsphere.local --password-env VC_PASSWORD --thumbprint "$TP" >/dev/null
/tmp/bulwark job create all --state /tmp/bw-state --folder /DC0/vm --exclude bulwark-appliance --schedule @daily >/dev/null
bw() { local s=$(date +%s.%N)
  read=$(/tmp/bulwark job run all --state /tmp/bw-state --store /tmp/bw-cmp --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(sum(v.get("bytes_read",0) for v in r["vms"]))')
  echo "bulwark $1: $(echo "$(date +%s.%N) - $s" | bc) s, read $((read>>20)) MiB"; }
rs() { local s=$(date +%s.%N); restic backup -q --exclude '*.vmsn' $DS; echo "restic $1: $(echo "$(date +%s.%N) - $s" | bc) s"; }
export BORG_PASSPHRASE=pw BORG_REPO=/tmp/borg-cmp BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
rm -rf $BORG_REPO; borg init --encryption=repokey-blake2 $BORG_REPO
bg() { local s=$(date +%s.%N); borg create --exclude '*.vmsn' ::$1 $DS; echo "borg $1: $(echo "$(date +%s.%N) - $s" | bc) s"; }
bw full; rs full; bg full
python3 - <<'PY'
import random, urllib.request
rng=random.Random(1); changed=0
for vm in range(1,21):
  for d in range(2):
    n=0
    while n < (256<<20)//100:
      size=4096+rng.randrange(252<<10); off=rng.randrange((256<<20)-size)
      req=urllib.request.Request(f"http://127.0.0.1:8990/vms/vm{vm:02d}/disks/{d}?offset={off}", data=rng.randbytes(size), method="PUT")
      urllib.request.urlopen(req).read(); n+=size; changed+=size
print("changed MiB", changed>>20)
PY
bw incremental; rs incremental; bg incremental
du -sm /tmp/bw-cmp /tmp/restic-cmp /tmp/borg-cmp
pkill -f "/tmp/bulwark lab" || true
