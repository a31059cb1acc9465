package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Captured deliveries: raw HTTP requests as "listen -save" writes them, read
// by "verify -request" and "send -request".

// readRequest parses a raw HTTP request and returns its header and body
// bytes, with notes on anything about the framing that may explain a
// mismatch.
func readRequest(data []byte) (http.Header, []byte, []string, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, nil, err
	}
	var notes []string
	var body []byte
	switch {
	case len(req.TransferEncoding) > 0:
		body, err = io.ReadAll(req.Body)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading chunked body: %w", err)
		}
		notes = append(notes, fmt.Sprintf("body is chunked; checking the %d decoded bytes", len(body)))
	case req.Header.Get("Content-Length") != "":
		body, err = io.ReadAll(req.Body)
		if err != nil {
			notes = append(notes, fmt.Sprintf("Content-Length says %d bytes but the file has only %d; checking those", req.ContentLength, len(body)))
		}
	default:
		body, _ = io.ReadAll(br)
		notes = append(notes, fmt.Sprintf("no Content-Length; taking the rest of the file (%d bytes) as the body", len(body)))
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		notes = append(notes, fmt.Sprintf("the file has %s after the %s of body that Content-Length declares; they are not checked (an editor may have added a final newline)",
			bytesCount(len(rest)), bytesCount(len(body))))
	}
	return req.Header, body, notes, nil
}

func bytesCount(n int) string {
	if n == 1 {
		return "1 byte"
	}
	return strconv.Itoa(n) + " bytes"
}
