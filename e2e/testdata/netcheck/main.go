// Command netcheck is what the end-to-end tests run in pods:
//
//	netcheck hello              print the greeting and exit
//	netcheck serve ADDR         answer every HTTP request with "netcheck from HOSTNAME"
//	netcheck get URL [SECONDS]  GET URL until it answers 200 or SECONDS pass (default 60); print
//	                            the body, exit 1 on failure
//
// Names resolve with Go's own resolver from /etc/resolv.conf, so `get` against a Service name
// goes through the cluster's DNS.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

const greeting = "hello from a pod of a real cluster, in an image built by image::oci"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: netcheck hello | serve ADDR | get URL [SECONDS]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "hello":
		fmt.Println(greeting)
	case "serve":
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "netcheck from %s\n", host)
		})
		if err := http.ListenAndServe(os.Args[2], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "get":
		limit := 60
		if len(os.Args) > 3 {
			limit, _ = strconv.Atoi(os.Args[3])
		}
		os.Exit(get(os.Args[2], time.Duration(limit)*time.Second))
	default:
		fmt.Fprintf(os.Stderr, "netcheck: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func get(url string, limit time.Duration) int {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				fmt.Print(string(body))
				return 0
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "netcheck: GET %s: %v\n", url, err)
			return 1
		}
		time.Sleep(time.Second)
	}
}
