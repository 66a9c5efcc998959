// An unmodified Go HTTP server, as most are written: net.Listen("tcp", ":PORT") is a
// dual-stack tcp6 socket, and r.RemoteAddr comes from accept(). Usage: toa_server PORT
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("go listening on", ln.Addr())
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, port, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "go saw client %s:%s\n", host, port)
	}))
}
