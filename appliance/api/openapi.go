package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/bulwarkbackup/bulwark/chunkstore/retention"
	"github.com/bulwarkbackup/bulwark/jobs"
)

// accessNames are the roles the document names for each access level.
var accessNames = map[access]string{
	public: "none", anyone: "any", viewer: "operator", operator: "operator",
	admin: "admin", vmScoped: "any (file-restore tokens: their VM only)",
}

// openAPI generates the OpenAPI document from the route table, with the
// request and response schemas reflected from the Go types that the
// handlers decode and encode.
func (s *Server) openAPI() ([]byte, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:       "Bulwark appliance API",
			Version:     "1",
			Description: "Backups of VMware vSphere VMs. Log in at POST /api/v1/sessions (a cookie session whose unsafe requests repeat the CSRF token in X-CSRF-Token), or send an API token as a bearer token.",
		},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: openapi3.Schemas{},
			SecuritySchemes: openapi3.SecuritySchemes{
				"bearer":  {Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer")},
				"session": {Value: openapi3.NewSecurityScheme().WithType("apiKey").WithIn("cookie").WithName(SessionCookie)},
			},
		},
	}
	gen := newSchemas(doc.Components.Schemas)
	errRef, err := gen.ref(Error{})
	if err != nil {
		return nil, err
	}
	for _, rt := range s.routes {
		op := openapi3.NewOperation()
		op.Summary = rt.summary
		op.OperationID = operationID(rt)
		op.Tags = []string{rt.tag}
		op.Extensions = map[string]any{"x-bulwark-role": accessNames[rt.access]}
		if rt.access == public {
			op.Security = &openapi3.SecurityRequirements{}
		} else {
			op.Security = &openapi3.SecurityRequirements{{"bearer": {}}, {"session": {}}}
		}
		for _, name := range pathParams(rt.path) {
			op.AddParameter(openapi3.NewPathParameter(name).WithSchema(openapi3.NewStringSchema()))
		}
		for _, q := range rt.query {
			sch := openapi3.NewStringSchema()
			if q.typ == "integer" {
				sch = openapi3.NewIntegerSchema().WithMin(0)
			}
			op.AddParameter(openapi3.NewQueryParameter(q.name).WithDescription(q.desc).WithSchema(sch))
		}
		if rt.in != nil {
			ref, err := gen.ref(rt.in)
			if err != nil {
				return nil, fmt.Errorf("%s %s request: %w", rt.method, rt.path, err)
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).
				WithContent(openapi3.NewContentWithJSONSchemaRef(ref))}
		}
		status := rt.status
		if status == 0 {
			status = http.StatusOK
		}
		ok := openapi3.NewResponse().WithDescription(http.StatusText(status))
		switch {
		case rt.stream != "":
			ok.WithContent(openapi3.Content{rt.stream: openapi3.NewMediaType().WithSchema(openapi3.NewStringSchema())})
		case rt.out != nil:
			ref, err := gen.ref(rt.out)
			if err != nil {
				return nil, fmt.Errorf("%s %s response: %w", rt.method, rt.path, err)
			}
			ok.WithContent(openapi3.NewContentWithJSONSchemaRef(ref))
		}
		op.Responses = openapi3.NewResponses(
			openapi3.WithStatus(status, &openapi3.ResponseRef{Value: ok}),
			openapi3.WithName("default", openapi3.NewResponse().WithDescription("An error").
				WithContent(openapi3.NewContentWithJSONSchemaRef(errRef))),
		)
		doc.AddOperation(rt.path, rt.method, op)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("invalid: %w", err)
	}
	return json.MarshalIndent(doc, "", "  ")
}

// operationID names an operation after its handler-like shape, such as
// "post-jobs-name-run".
func operationID(rt route) string {
	p := strings.TrimPrefix(rt.path, Prefix)
	p = strings.NewReplacer("{", "", "}", "", "/", "-", ".", "-").Replace(p)
	return strings.ToLower(rt.method) + strings.TrimSuffix(p, "-")
}

// schemas reflects Go types into component schemas.
type schemas struct {
	components openapi3.Schemas
	gen        *openapi3gen.Generator
}

// Types whose JSON form is their own, not that of their fields.
var (
	windowType  = reflect.TypeFor[jobs.Window]()
	policyType  = reflect.TypeFor[retention.Policy]()
	rawJSONType = reflect.TypeFor[json.RawMessage]()
)

func newSchemas(components openapi3.Schemas) *schemas {
	custom := func(name string, t reflect.Type, tag reflect.StructTag, sch *openapi3.Schema) error {
		switch t {
		case windowType:
			*sch = *openapi3.NewObjectSchema().
				WithProperty("start", openapi3.NewStringSchema().WithPattern(`^[0-2][0-9]:[0-5][0-9]$`)).
				WithProperty("duration", openapi3.NewStringSchema())
			sch.Description = `the daily backup window: {"start": "22:00", "duration": "8h"}; {} is always open`
		case policyType:
			obj := openapi3.NewObjectSchema()
			for _, n := range []string{"last", "hourly", "daily", "weekly", "monthly", "quarterly", "yearly"} {
				obj.WithProperty(n, openapi3.NewIntegerSchema().WithMin(-1))
			}
			obj.WithProperty("within", openapi3.NewStringSchema())
			obj.WithProperty("location", openapi3.NewStringSchema())
			obj.Description = "a retention policy: counts per rule (-1 keeps all), within a span such as \"30d\", in a time zone"
			*sch = *obj
		case rawJSONType:
			*sch = openapi3.Schema{Description: "JSON as vSphere gave it", Nullable: true}
		}
		// Go encodes nil slices and maps as null.
		if sch.Type.Is("array") || sch.Type.Is("object") && sch.AdditionalProperties.Schema != nil {
			sch.Nullable = true
		}
		return nil
	}
	return &schemas{components: components, gen: openapi3gen.NewGenerator(openapi3gen.SchemaCustomizer(custom))}
}

// ref returns a reference to the schema of v's type, adding it to the
// components; slices refer to their element's component.
func (s *schemas) ref(v any) (*openapi3.SchemaRef, error) {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Slice {
		elem, err := s.ref(reflect.Zero(t.Elem()).Interface())
		if err != nil {
			return nil, err
		}
		return openapi3.NewArraySchema().WithItems(elem.Value).NewRef(), nil
	}
	name := t.Name()
	// The API's own types, also those of its client packages (fileapi),
	// go by their names; others are prefixed with their package's.
	if pkg := t.PkgPath(); pkg != "" && !strings.HasSuffix(pkg, "/api") && !strings.Contains(pkg, "/appliance/api/") {
		name = pkg[strings.LastIndex(pkg, "/")+1:] + strings.ToUpper(name[:1]) + name[1:]
	}
	if _, ok := s.components[name]; !ok {
		ref, err := s.gen.NewSchemaRefForValue(v, s.components)
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", t, err)
		}
		s.components[name] = ref
	}
	return openapi3.NewSchemaRef("#/components/schemas/"+name, s.components[name].Value), nil
}
