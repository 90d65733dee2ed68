package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/connectors/importer"
	"github.com/sluicehq/sluice/pipeline"
)

func importCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "import --format " + strings.Join(importer.Formats(), "|") + " FILE",
		Short: "Convert a public retail data set to Sluice events (JSONL on stdout)",
		Long: "Convert a public retail clickstream data set (REES46 CSV, Taobao CSV, OTTO JSONL)\n" +
			"into Sluice events, written as JSONL to stdout. FILE may be gzipped; - reads stdin.\n" +
			"Imported events state consent {analytics, personalization}: the public data sets\n" +
			"are assumed consented. See package connectors/importer for the mapping.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(importer.Formats(), format) {
				return fmt.Errorf("import: unknown format %q (want one of %s)", format, strings.Join(importer.Formats(), ", "))
			}
			in, closeIn, err := openImportInput(args[0])
			if err != nil {
				return err
			}
			defer closeIn()
			w := bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10)
			var buf []byte
			err = importer.Read(format, in, func(e *pipeline.Event) error {
				buf = pipeline.AppendEventJSON(buf[:0], e)
				buf = append(buf, '\n')
				_, err := w.Write(buf)
				return err
			})
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "input format: "+strings.Join(importer.Formats(), ", "))
	_ = cmd.MarkFlagRequired("format")
	return cmd
}

// openImportInput opens path ("-" is stdin), gunzipping it when it starts
// with the gzip magic bytes.
func openImportInput(path string) (io.Reader, func(), error) {
	var f *os.File
	if path == "-" {
		f = os.Stdin
	} else {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, nil, err
		}
	}
	closeFile := func() {
		if f != os.Stdin {
			_ = f.Close()
		}
	}
	br := bufio.NewReaderSize(f, 256<<10)
	magic, _ := br.Peek(2)
	if !bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return br, closeFile, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		closeFile()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return zr, func() { _ = zr.Close(); closeFile() }, nil
}
