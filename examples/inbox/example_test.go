package main

import (
	"context"
	"database/sql"
	"log"
	"log/slog"
	"net/http"
	"os"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"riverqueue.com/riverui"
)

// River UI beside a receiver, on a listener of its own behind Basic
// authentication, as the example's -ui does.
func Example_riverUI() {
	ctx := context.Background()
	db, err := sql.Open("sqlite", sqliteDSN("inbox.sqlite"))
	if err != nil {
		log.Fatal(err)
	}
	client, err := river.NewClient(riversqlite.New(db), &river.Config{})
	if err != nil {
		log.Fatal(err)
	}

	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(client, nil), // the receiver's River client
		Logger:    slog.Default(),
		Prefix:    "/",
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := ui.Start(ctx); err != nil {
		log.Fatal(err)
	}
	// Its own listener, never the webhook's, and its own credentials:
	// River UI shows every payload and can retry, cancel and delete jobs.
	password := os.Getenv("TLWEBHOOK_UI_PASSWORD")
	uiServer := &http.Server{Addr: "127.0.0.1:8081", Handler: basicAuth("admin", password, ui)}
	log.Fatal(uiServer.ListenAndServe())
}
