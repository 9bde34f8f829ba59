package appliance_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks the served OpenAPI document against what
// the server answers: every operation in it is routed, and every routed
// request path and method is in it.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	r := newApplianceRig(t, nil)
	ctx := context.Background()
	c := r.admin()
	doc := r.openAPI(c)
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the document is not valid OpenAPI 3: %v", err)
	}

	inDoc := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc[method+" "+path] = true
		}
	}
	var served []string
	for _, rt := range r.ap.Routes() {
		served = append(served, rt.Method+" "+rt.Path)
	}
	for _, k := range served {
		if !inDoc[k] {
			t.Errorf("%s is served but not in the OpenAPI document", k)
		}
		delete(inDoc, k)
	}
	for k := range inDoc {
		t.Errorf("%s is in the OpenAPI document but not served", k)
	}

	// Each documented operation answers on its path and method: without
	// credentials every one but the public ones is 401, never 404 or 405.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			url := r.ap.URL() + strings.NewReplacer("{name}", "x", "{id}", "0123456789abcdef").Replace(path)
			req, _ := http.NewRequestWithContext(ctx, method, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			public := op.Security != nil && len(*op.Security) == 0
			switch {
			case public && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed):
				t.Errorf("%s %s: %s", method, path, resp.Status)
			case !public && resp.StatusCode != http.StatusUnauthorized:
				t.Errorf("%s %s without credentials: %s, want 401", method, path, resp.Status)
			}
		}
	}
	if len(served) < 40 {
		t.Errorf("only %d routes served", len(served))
	}
	if !slices.Contains(served, "GET /healthz") {
		t.Error("no /healthz")
	}
}
