package stdio

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// The spawner's wire, over one Unix-socket connection per agent process.
// The runtime opens with a spawnRequest line; then both sides send frames:
// a kind byte, a big-endian uint32 length, and that many bytes.
const (
	// From the runtime.
	frameStdin      byte = 'i' // bytes for the program's standard input
	frameCloseStdin byte = 'c' // close its standard input
	frameTerm       byte = 't' // SIGTERM to its process group
	frameKill       byte = 'k' // SIGKILL to its process group
	// From the spawner.
	frameStdout byte = 'o' // bytes the program wrote to standard output
	frameStderr byte = 'e' // bytes it wrote to standard error
	frameExit   byte = 'x' // it exited (and its output is all sent): how, empty for success
)

// maxSpawnFrame bounds one frame's payload; writers cut their data into
// chunks of at most spawnChunk.
const (
	maxSpawnFrame   = 64 << 10
	spawnChunk      = 32 << 10
	maxSpawnRequest = 4 << 10
)

// spawnRequest is the first line the runtime sends: which conversation the
// process is for.
type spawnRequest struct {
	Conversation string `json:"conversation"`
}

func writeSpawnRequest(w io.Writer, r spawnRequest) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	if len(payload) > maxSpawnFrame {
		return fmt.Errorf("stdio: a spawner frame of %d bytes is over %d", len(payload), maxSpawnFrame)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload))) //nolint:gosec // bounded above
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader) (kind byte, payload []byte, err error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[1:5])
	if n > maxSpawnFrame {
		return 0, nil, fmt.Errorf("stdio: a spawner frame of %d bytes is over %d", n, maxSpawnFrame)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return head[0], payload, nil
}
