package gateway

import (
	"encoding/json"

	"tether.dev/tether/protocol"
)

// marshalFrame encodes a frame of the gateway's own (status, errors).
func marshalFrame(f protocol.ServerFrame) ([]byte, error) { return json.Marshal(f) }
