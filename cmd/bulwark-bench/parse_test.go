package main

import (
	"strings"
	"testing"
)

const sgdiskOutput = `Disk disk.img: 524288 sectors, 256.0 MiB
Sector size (logical): 512 bytes
Disk identifier (GUID): 5EC0B7E2-0000-4000-8000-00000000B001
Partition table holds up to 128 entries
Main partition table begins at sector 2 and ends at sector 33
First usable sector is 34, last usable sector is 524254
Partitions will be aligned on 2048-sector boundaries
Total free space is 2014 sectors (1007.0 KiB)

Number  Start (sector)    End (sector)  Size       Code  Name
   1            2048          524254   255.0 MiB   8300  
Partition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)
Partition unique GUID: 5EC0B7E2-0000-4000-8000-00000000B002
First sector: 2048 (at 1024.0 KiB)
Last sector: 524254 (at 256.0 MiB)
Partition size: 522207 sectors (255.0 MiB)
Attribute flags: 0000000000000000
Partition name: ''
`

func TestParseSgdiskLayout(t *testing.T) {
	got, err := parseSgdiskLayout(sgdiskOutput)
	if err != nil {
		t.Fatal(err)
	}
	if want := (gptLayout{SectorSize: 512, First: 2048, Last: 524254}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	noPartition := strings.Split(sgdiskOutput, "Partition GUID code")[0]
	if _, err := parseSgdiskLayout(noPartition); err == nil {
		t.Error("want an error without partition information")
	}
}

func TestDecodeLastJSON(t *testing.T) {
	out := []byte("progress {not json\n{\"point\": \"p1\", \"bytes_read\": 1}\nsome text\n{\n  \"point\": \"p2\",\n  \"bytes_read\": 42,\n  \"nested\": {\"a\": 1}\n}\n")
	var got bulwarkBackupJSON
	if err := decodeLastJSON(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Point != "p2" || got.BytesRead != 42 {
		t.Errorf("got %+v, want the last object", got)
	}
	if err := decodeLastJSON([]byte("abc123\n"), &got); err == nil {
		t.Error("want an error without a JSON object")
	}
}

func TestParseResticSummary(t *testing.T) {
	out := `{"message_type":"status","percent_done":0,"bytes_done":77027293}
{"message_type":"summary","data_added":8423137,"data_added_packed":737632,"total_bytes_processed":268435456,"snapshot_id":"17a2a0ab"}
`
	got, err := parseResticSummary([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := resticSummary{MessageType: "summary", SnapshotID: "17a2a0ab", DataAdded: 8423137, DataAddedPacked: 737632, BytesProcessed: 268435456}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseResticSummary([]byte(`{"message_type":"status"}`)); err == nil {
		t.Error("want an error without a summary")
	}
}

func TestPlanCopy(t *testing.T) {
	small := sourceRoot{Dir: "/s", Total: 30, Files: []sourceFile{{"s/a", 10}, {"s/b", 20}}}
	big := sourceRoot{Dir: "/b", Total: 1000, Files: []sourceFile{{"b/a", 40}, {"b/b", 200}, {"b/c", 30}, {"b/d", 500}, {"b/e", 230}}}
	// A budget of 200 gives each root 100; the small root needs 30, so the
	// big one may use 170: b/a (40) and b/c (30) fit, b/b (200) never does.
	got := planCopy([]sourceRoot{big, small}, 200)
	want := []sourceFile{{"b/a", 40}, {"b/c", 30}, {"s/a", 10}, {"s/b", 20}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if got := planCopy([]sourceRoot{big, small}, 0); len(got) != 0 {
		t.Errorf("zero budget copied %v", got)
	}
}
