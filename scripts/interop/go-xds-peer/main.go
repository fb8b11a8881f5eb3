// go-xds-peer: a small xDS peer built on github.com/envoyproxy/go-control-plane, used only by AGW's
// interop test. It treats AGW resources as opaque bytes, as any generic xDS implementation would.
//
//	go-xds-peer serve --listen 127.0.0.1:0 --resources FILE
//	    serves ADS (SotW and Delta) with one LinearCache per type URL; FILE is JSON
//	    {typeUrl: {name: base64 bytes}}. Each line read on stdin names a new FILE to serve.
//	go-xds-peer fetch --server HOST:PORT --node ID --type URL [--type URL ...] --responses N
//	    go-control-plane's SotW ADS client, one stream per type; ACKs every response and prints one
//	    JSON line per response; exits once N responses (all types together) have arrived.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	client "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
)

type typeList []string

func (t *typeList) String() string     { return fmt.Sprint(*t) }
func (t *typeList) Set(v string) error { *t = append(*t, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-xds-peer serve|fetch ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "fetch":
		err = fetch(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-xds-peer:", err)
		os.Exit(1)
	}
}

// opaque carries a resource's encoded bytes as unknown fields: marshalling emits them unchanged.
func opaque(b []byte) types.Resource {
	m := &emptypb.Empty{}
	m.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
	return m
}

func readResources(path string) (map[string]map[string]types.Resource, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var parsed map[string]map[string][]byte
	if err := json.Unmarshal(raw, &parsed); err != nil {
		return nil, err
	}
	out := map[string]map[string]types.Resource{}
	for typeURL, byName := range parsed {
		out[typeURL] = map[string]types.Resource{}
		for name, b := range byName {
			out[typeURL][name] = opaque(b)
		}
	}
	return out, nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	file := fs.String("resources", "", "JSON {typeUrl: {name: base64}}")
	_ = fs.Parse(args)
	initial, err := readResources(*file)
	if err != nil {
		return err
	}
	caches := map[string]cache.Cache{}
	linear := map[string]*cache.LinearCache{}
	for typeURL, resources := range initial {
		linear[typeURL] = cache.NewLinearCache(typeURL, cache.WithInitialResources(resources))
		caches[typeURL] = linear[typeURL]
	}
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        caches,
	}
	var mu sync.Mutex
	callbacks := server.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discovery.DiscoveryRequest) error {
			report(&mu, map[string]any{"event": "request", "node": r.GetNode().GetId(), "type": r.GetTypeUrl(),
				"version": r.GetVersionInfo(), "nonce": r.GetResponseNonce(), "error": r.GetErrorDetail().GetMessage()})
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discovery.DeltaDiscoveryRequest) error {
			report(&mu, map[string]any{"event": "delta_request", "node": r.GetNode().GetId(), "type": r.GetTypeUrl(),
				"nonce": r.GetResponseNonce(), "error": r.GetErrorDetail().GetMessage()})
			return nil
		},
	}
	srv := server.NewServer(context.Background(), mux, callbacks)
	grpcServer := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, srv)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	report(&mu, map[string]any{"event": "listening", "address": lis.Addr().String()})
	go func() {
		lines := bufio.NewScanner(os.Stdin)
		for lines.Scan() {
			next, err := readResources(lines.Text())
			if err != nil {
				report(&mu, map[string]any{"event": "error", "error": err.Error()})
				continue
			}
			for typeURL, c := range linear {
				c.SetResources(next[typeURL])
			}
			report(&mu, map[string]any{"event": "updated", "file": lines.Text()})
		}
		grpcServer.Stop()
	}()
	return grpcServer.Serve(lis)
}

func report(mu *sync.Mutex, fields map[string]any) {
	mu.Lock()
	defer mu.Unlock()
	line, _ := json.Marshal(fields)
	fmt.Println(string(line))
}

func fetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	target := fs.String("server", "", "HOST:PORT")
	node := fs.String("node", "go-xds-peer", "node id")
	responses := fs.Int("responses", 1, "responses to receive, all types together")
	var typeURLs typeList
	fs.Var(&typeURLs, "type", "type URL (repeatable)")
	_ = fs.Parse(args)
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	var mu sync.Mutex
	received := make(chan struct{}, *responses)
	errs := make(chan error, len(typeURLs))
	for _, typeURL := range typeURLs {
		ads := client.NewADSClient(ctx, &core.Node{Id: *node}, typeURL)
		if err := ads.InitConnect(conn); err != nil {
			return err
		}
		go func() {
			for {
				resp, err := ads.Fetch()
				if err != nil {
					errs <- fmt.Errorf("%s: %w", typeURL, err)
					return
				}
				digests := []string{}
				for _, any := range resp.Resources {
					sum := sha256.Sum256(any.GetValue())
					digests = append(digests, hex.EncodeToString(sum[:8]))
				}
				if err := ads.Ack(); err != nil {
					errs <- err
					return
				}
				report(&mu, map[string]any{"event": "response", "type": typeURL, "resources": len(resp.Resources), "digests": digests})
				received <- struct{}{}
			}
		}()
	}
	for i := 0; i < *responses; i++ {
		select {
		case <-received:
		case err := <-errs:
			return err
		}
	}
	return nil
}
