package capture

import (
	"os"
	"testing"
)

// TestReadable: a pipe tells the bytes it holds; /dev/null cannot.
func TestReadable(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if n, err := Readable(r); n != 0 || err != nil {
		t.Errorf("empty pipe: got %d, %v; want 0, nil", n, err)
	}
	w.Write(make([]byte, 100))
	if n, err := Readable(r); n != 100 || err != nil {
		t.Errorf("pipe holding 100 bytes: got %d, %v; want 100, nil", n, err)
	}
	r.Read(make([]byte, 60))
	if n, err := Readable(r); n != 40 || err != nil {
		t.Errorf("after reading 60: got %d, %v; want 40, nil", n, err)
	}

	// A device without FIONREAD.
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if n, err := Readable(null); err == nil {
		t.Errorf("%s: got %d, nil; want an error", os.DevNull, n)
	}
}
