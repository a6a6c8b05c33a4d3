package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// etcdGateway is the local cluster's etcd, on the loopback of the network
// namespace the suite runs in.
const etcdGateway = "http://127.0.0.1:2379"

// etcdAlarms returns the alarms the cluster's etcd has raised (NOSPACE when
// its file reached the backend quota: every write is refused until it is
// defragmented and the alarm cleared, which hack/cluster/etcd-keeper.sh does).
// A run that stops healing because of one says so instead of going on
// injecting faults into a cluster that can no longer write.
func etcdAlarms(ctx context.Context) ([]string, error) {
	var out struct {
		Alarms []struct {
			MemberID string `json:"memberID"`
			Alarm    string `json:"alarm"`
		} `json:"alarms"`
	}
	if err := etcdCall(ctx, "alarm", `{"action":"GET"}`, &out); err != nil {
		return nil, err
	}
	var alarms []string
	for _, a := range out.Alarms {
		alarms = append(alarms, fmt.Sprintf("%s on member %s", a.Alarm, a.MemberID))
	}
	return alarms, nil
}

// etcdFileSize returns the size of etcd's file and the part of it in use.
func etcdFileSize(ctx context.Context) (size, inUse int64, err error) {
	var out struct {
		DBSize      int64 `json:"dbSize,string"`
		DBSizeInUse int64 `json:"dbSizeInUse,string"`
	}
	err = etcdCall(ctx, "status", `{}`, &out)
	return out.DBSize, out.DBSizeInUse, err
}

// etcdCall posts body to one of etcd's maintenance calls and decodes the answer.
func etcdCall(ctx context.Context, call, body string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, etcdGateway+"/v3/maintenance/"+call, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", call, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s", call, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
