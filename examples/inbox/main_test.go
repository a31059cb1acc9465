package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tlwebhook/tlwebhook"
	"github.com/tlwebhook/tlwebhook/tlwebhooktest"
)

// TestRunEndToEnd runs the example as its main does, on SQLite in a
// temporary directory, and on PostgreSQL when TLWEBHOOK_DATABASE_URL names
// one (.ci/postgres.sh): two signed deliveries of one completed job and one
// of another, over HTTP, are answered 204 and end as one row each in
// parsed_jobs.
func TestRunEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "inbox.sqlite")
		runEndToEnd(t, []string{"-sqlite", path}, func() (map[string]int, error) {
			db, err := sql.Open("sqlite", sqliteDSN(path))
			if err != nil {
				return nil, err
			}
			defer db.Close()
			return parsedJobs(db.QueryContext(context.Background(), "select job_id, pages from parsed_jobs"))
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dbURL := os.Getenv("TLWEBHOOK_DATABASE_URL")
		if dbURL == "" {
			t.Skip("TLWEBHOOK_DATABASE_URL is not set (the riverinbox module's tests cover PostgreSQL; `. .ci/postgres.sh` sets it)")
		}
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		name := fmt.Sprintf("inbox_example_%d", time.Now().UnixNano())
		if _, err := admin.Exec(ctx, "create database "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "drop database if exists "+name+" with (force)") })
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/" + name
		runEndToEnd(t, []string{"-database-url", u.String()}, func() (map[string]int, error) {
			conn, err := pgx.Connect(ctx, u.String())
			if err != nil {
				return nil, err
			}
			defer conn.Close(ctx)
			rows, err := conn.Query(ctx, "select job_id, pages from parsed_jobs")
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			return scanParsed(rows)
		})
	})
}

func parsedJobs(rows *sql.Rows, err error) (map[string]int, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanParsed(rows)
}

// scanParsed reads (job id, pages) rows; pgx.Rows and *sql.Rows both have
// these methods.
func scanParsed(rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}) (map[string]int, error) {
	m := map[string]int{}
	for rows.Next() {
		var id string
		var pages int
		if err := rows.Scan(&id, &pages); err != nil {
			return nil, err
		}
		m[id] = pages
	}
	return m, rows.Err()
}

func runEndToEnd(t *testing.T, dbArgs []string, parsed func() (map[string]int, error)) {
	secret := tlwebhooktest.NewSecret()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0", "-secret", secret, "-workers", "2"}, dbArgs...), pw)
		_ = pw.Close()
	}()
	var endpoint string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			endpoint = u
			break
		}
	}
	if endpoint == "" {
		t.Fatalf("the example did not start: %v", <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	signer, err := tlwebhooktest.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	sample := tlwebhooktest.Sample(tlwebhook.EventTypeJobCompleted)
	var fields struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(sample, &fields); err != nil || fields.JobID == "" {
		t.Fatalf("sample job_id %q: %v", fields.JobID, err)
	}
	old, _ := json.Marshal(fields.JobID)
	first := bytes.Replace(sample, old, []byte(`"parse_first"`), 1)
	second := bytes.Replace(sample, old, []byte(`"parse_second"`), 1)
	firstID := tlwebhooktest.NewMessageID()
	for _, d := range []struct {
		id   string
		body []byte
	}{{firstID, first}, {firstID, first}, {tlwebhooktest.NewMessageID(), second}} {
		req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(d.body))
		for k, v := range signer.HeaderFor(d.id, time.Now(), d.body) {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d, want 204", resp.StatusCode)
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := parsed()
		if err == nil && len(got) == 2 && got["parse_first"] == 10 && got["parse_second"] == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("parsed_jobs %v (error %v), want parse_first and parse_second with 10 pages each", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after the interrupt", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after the interrupt")
	}
}
