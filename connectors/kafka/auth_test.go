package kafka_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/connectors/kafka"
)

// selfSigned returns a TLS certificate for 127.0.0.1 and its PEM file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kfake"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, path
}

// TestTLSAndSASL connects over TLS with each SASL mechanism, the password
// from the environment: topics are created, events produced and read back.
func TestTLSAndSASL(t *testing.T) {
	if os.Getenv("SLUICE_KAFKA_BROKERS") != "" {
		t.Skip("needs the in-process broker with TLS and SASL")
	}
	cert, caFile := selfSigned(t)
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", "plain-pw"),
		kfake.Superuser("SCRAM-SHA-256", "scram256-user", "scram256-pw"),
		kfake.Superuser("SCRAM-SHA-512", "scram512-user", "scram512-pw"),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			user := strings.ToLower(strings.ReplaceAll(mech, "-SHA-", "")) + "-user"
			env := "SLUICE_TEST_PW_" + strings.ReplaceAll(mech, "-", "_")
			t.Setenv(env, strings.TrimSuffix(user, "-user")+"-pw")
			cc := kafka.ClientConfig{
				Brokers: brokers,
				TLS:     &kafka.TLSConfig{Enabled: true, CAFile: caFile},
				SASL:    &kafka.SASLConfig{Mechanism: mech, User: user, PasswordEnv: env},
			}
			topic := "auth-" + strings.ToLower(mech)
			if err := kafka.EnsureTopic(cc, topic, 2, nil); err != nil {
				t.Fatal(err)
			}
			in := `{"event_id":"e1","type":"page_viewed","user_id":"u1","timestamp":"2026-11-28T10:00:00Z"}` + "\n"
			if n, err := kafka.ProduceJSONL(context.Background(), strings.NewReader(in), kafka.ProduceConfig{ClientConfig: cc, Topic: topic}); err != nil || n != 1 {
				t.Fatalf("produce: %d, %v", n, err)
			}
			var out bytes.Buffer
			if n, err := kafka.Consume(context.Background(), &out, kafka.ConsumeConfig{ClientConfig: cc, Topic: topic}); err != nil || n != 1 {
				t.Fatalf("consume: %d, %v", n, err)
			}
			if out.String() != in {
				t.Fatalf("read back %q, want %q", out.String(), in)
			}
			if mech != "PLAIN" {
				return
			}
			// A wrong password is refused (once: sarama retries a while).
			bad := cc
			bad.SASL = &kafka.SASLConfig{Mechanism: mech, User: user, Password: "wrong"}
			if err := kafka.EnsureTopic(bad, topic, 2, nil); err == nil {
				t.Fatal("a wrong password was accepted")
			}
		})
	}
}
