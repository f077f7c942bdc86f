// An independent check of bench:checkpoint's raw upload: the same bytes put into the same MinIO by
// minio-go, the Go client, one goroutine per object, all at once. Prints the median and the fastest
// round in milliseconds as JSON.
//
// Usage: S3_ENDPOINT=http://host:port S3_ACCESS_KEY=… S3_SECRET_KEY=… S3_BUCKET=… \
//   raw-upload-go -sizes 2500000,2500000,2500000,2500000 -rounds 10
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	sizes := flag.String("sizes", "", "comma-separated object sizes in bytes, one object per size")
	rounds := flag.Int("rounds", 10, "rounds of uploading every object at once")
	partSize := flag.Uint64("part-size", 8<<20, "multipart part size in bytes")
	threads := flag.Uint("threads", 4, "parts of one object in flight")
	flag.Parse()
	endpoint, err := url.Parse(os.Getenv("S3_ENDPOINT"))
	check(err)
	client, err := minio.New(endpoint.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(os.Getenv("S3_ACCESS_KEY"), os.Getenv("S3_SECRET_KEY"), ""),
		Secure: endpoint.Scheme == "https",
		Region: "us-east-1",
	})
	check(err)
	bucket := os.Getenv("S3_BUCKET")
	var bodies [][]byte
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(s)
		check(err)
		body := make([]byte, n)
		_, err = rand.Read(body)
		check(err)
		bodies = append(bodies, body)
	}
	var times []float64
	for round := 0; round < *rounds; round++ {
		started := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(bodies))
		for i, body := range bodies {
			wg.Add(1)
			go func(i int, body []byte) {
				defer wg.Done()
				key := fmt.Sprintf("raw-go/%d/task-%d", round, i)
				_, err := client.PutObject(context.Background(), bucket, key, bytes.NewReader(body), int64(len(body)),
					minio.PutObjectOptions{PartSize: *partSize, NumThreads: *threads, DisableContentSha256: true})
				errs <- err
			}(i, body)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			check(err)
		}
		times = append(times, float64(time.Since(started).Microseconds())/1000)
	}
	sort.Float64s(times)
	out, _ := json.Marshal(map[string]float64{"p50_ms": times[(len(times)+1)/2-1], "min_ms": times[0]})
	fmt.Println(string(out))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
