package sigv4

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

type s3Level int

const (
	s3Service s3Level = iota // no bucket: ListBuckets
	s3Bucket
	s3Object
)

// s3Rule maps one S3 REST request form to its IAM action.
type s3Rule struct {
	level  s3Level
	method string
	// sub is the query parameter (subresource) that selects the
	// operation; "" for the plain form.
	sub string
	// params are the other query parameters the operation takes; a
	// request with any other is not this operation.
	params []string
	// response: the operation takes response-* parameters (GetObject).
	response bool
	name     string
	action   string
	// versioned is the action when versionId is given; "" when the
	// operation takes no versionId.
	versioned string
}

var (
	listParams     = []string{"prefix", "delimiter", "marker", "max-keys", "encoding-type", "list-type", "continuation-token", "fetch-owner", "start-after"}
	versionsParams = []string{"prefix", "delimiter", "key-marker", "version-id-marker", "max-keys", "encoding-type"}
	uploadsParams  = []string{"prefix", "delimiter", "key-marker", "upload-id-marker", "max-uploads", "encoding-type"}
)

// s3Rules: the IAM actions are those AWS documents for each operation
// (Amazon S3 API permissions reference). DELETE of a bucket's tagging,
// CORS, lifecycle or encryption needs the Put action, as AWS has it.
var s3Rules = []s3Rule{
	{level: s3Service, method: "GET", params: []string{"max-buckets", "continuation-token", "prefix", "bucket-region"}, name: "ListBuckets", action: "s3:ListAllMyBuckets"},

	{level: s3Bucket, method: "GET", params: listParams, name: "ListObjects", action: "s3:ListBucket"},
	{level: s3Bucket, method: "HEAD", name: "HeadBucket", action: "s3:ListBucket"},
	{level: s3Bucket, method: "PUT", name: "CreateBucket", action: "s3:CreateBucket"},
	{level: s3Bucket, method: "DELETE", name: "DeleteBucket", action: "s3:DeleteBucket"},
	{level: s3Bucket, method: "POST", sub: "delete", name: "DeleteObjects", action: "s3:DeleteObject"},
	{level: s3Bucket, method: "GET", sub: "location", name: "GetBucketLocation", action: "s3:GetBucketLocation"},
	{level: s3Bucket, method: "GET", sub: "versions", params: versionsParams, name: "ListObjectVersions", action: "s3:ListBucketVersions"},
	{level: s3Bucket, method: "GET", sub: "uploads", params: uploadsParams, name: "ListMultipartUploads", action: "s3:ListBucketMultipartUploads"},
	{level: s3Bucket, method: "GET", sub: "policy", name: "GetBucketPolicy", action: "s3:GetBucketPolicy"},
	{level: s3Bucket, method: "PUT", sub: "policy", name: "PutBucketPolicy", action: "s3:PutBucketPolicy"},
	{level: s3Bucket, method: "DELETE", sub: "policy", name: "DeleteBucketPolicy", action: "s3:DeleteBucketPolicy"},
	{level: s3Bucket, method: "GET", sub: "policyStatus", name: "GetBucketPolicyStatus", action: "s3:GetBucketPolicyStatus"},
	{level: s3Bucket, method: "GET", sub: "acl", name: "GetBucketAcl", action: "s3:GetBucketAcl"},
	{level: s3Bucket, method: "PUT", sub: "acl", name: "PutBucketAcl", action: "s3:PutBucketAcl"},
	{level: s3Bucket, method: "GET", sub: "tagging", name: "GetBucketTagging", action: "s3:GetBucketTagging"},
	{level: s3Bucket, method: "PUT", sub: "tagging", name: "PutBucketTagging", action: "s3:PutBucketTagging"},
	{level: s3Bucket, method: "DELETE", sub: "tagging", name: "DeleteBucketTagging", action: "s3:PutBucketTagging"},
	{level: s3Bucket, method: "GET", sub: "versioning", name: "GetBucketVersioning", action: "s3:GetBucketVersioning"},
	{level: s3Bucket, method: "PUT", sub: "versioning", name: "PutBucketVersioning", action: "s3:PutBucketVersioning"},
	{level: s3Bucket, method: "GET", sub: "cors", name: "GetBucketCors", action: "s3:GetBucketCORS"},
	{level: s3Bucket, method: "PUT", sub: "cors", name: "PutBucketCors", action: "s3:PutBucketCORS"},
	{level: s3Bucket, method: "DELETE", sub: "cors", name: "DeleteBucketCors", action: "s3:PutBucketCORS"},
	{level: s3Bucket, method: "GET", sub: "lifecycle", name: "GetBucketLifecycleConfiguration", action: "s3:GetLifecycleConfiguration"},
	{level: s3Bucket, method: "PUT", sub: "lifecycle", name: "PutBucketLifecycleConfiguration", action: "s3:PutLifecycleConfiguration"},
	{level: s3Bucket, method: "DELETE", sub: "lifecycle", name: "DeleteBucketLifecycle", action: "s3:PutLifecycleConfiguration"},
	{level: s3Bucket, method: "GET", sub: "encryption", name: "GetBucketEncryption", action: "s3:GetEncryptionConfiguration"},
	{level: s3Bucket, method: "PUT", sub: "encryption", name: "PutBucketEncryption", action: "s3:PutEncryptionConfiguration"},
	{level: s3Bucket, method: "DELETE", sub: "encryption", name: "DeleteBucketEncryption", action: "s3:PutEncryptionConfiguration"},
	{level: s3Bucket, method: "GET", sub: "publicAccessBlock", name: "GetPublicAccessBlock", action: "s3:GetBucketPublicAccessBlock"},
	{level: s3Bucket, method: "PUT", sub: "publicAccessBlock", name: "PutPublicAccessBlock", action: "s3:PutBucketPublicAccessBlock"},
	{level: s3Bucket, method: "DELETE", sub: "publicAccessBlock", name: "DeletePublicAccessBlock", action: "s3:PutBucketPublicAccessBlock"},
	{level: s3Bucket, method: "GET", sub: "ownershipControls", name: "GetBucketOwnershipControls", action: "s3:GetBucketOwnershipControls"},
	{level: s3Bucket, method: "PUT", sub: "ownershipControls", name: "PutBucketOwnershipControls", action: "s3:PutBucketOwnershipControls"},
	{level: s3Bucket, method: "DELETE", sub: "ownershipControls", name: "DeleteBucketOwnershipControls", action: "s3:PutBucketOwnershipControls"},
	{level: s3Bucket, method: "GET", sub: "website", name: "GetBucketWebsite", action: "s3:GetBucketWebsite"},
	{level: s3Bucket, method: "PUT", sub: "website", name: "PutBucketWebsite", action: "s3:PutBucketWebsite"},
	{level: s3Bucket, method: "DELETE", sub: "website", name: "DeleteBucketWebsite", action: "s3:DeleteBucketWebsite"},
	{level: s3Bucket, method: "GET", sub: "logging", name: "GetBucketLogging", action: "s3:GetBucketLogging"},
	{level: s3Bucket, method: "PUT", sub: "logging", name: "PutBucketLogging", action: "s3:PutBucketLogging"},
	{level: s3Bucket, method: "GET", sub: "notification", name: "GetBucketNotificationConfiguration", action: "s3:GetBucketNotification"},
	{level: s3Bucket, method: "PUT", sub: "notification", name: "PutBucketNotificationConfiguration", action: "s3:PutBucketNotification"},

	{level: s3Object, method: "GET", params: []string{"partNumber"}, response: true, name: "GetObject", action: "s3:GetObject", versioned: "s3:GetObjectVersion"},
	{level: s3Object, method: "HEAD", params: []string{"partNumber"}, response: true, name: "HeadObject", action: "s3:GetObject", versioned: "s3:GetObjectVersion"},
	{level: s3Object, method: "PUT", name: "PutObject", action: "s3:PutObject"},
	{level: s3Object, method: "DELETE", name: "DeleteObject", action: "s3:DeleteObject", versioned: "s3:DeleteObjectVersion"},
	{level: s3Object, method: "GET", sub: "tagging", name: "GetObjectTagging", action: "s3:GetObjectTagging", versioned: "s3:GetObjectVersionTagging"},
	{level: s3Object, method: "PUT", sub: "tagging", name: "PutObjectTagging", action: "s3:PutObjectTagging", versioned: "s3:PutObjectVersionTagging"},
	{level: s3Object, method: "DELETE", sub: "tagging", name: "DeleteObjectTagging", action: "s3:DeleteObjectTagging", versioned: "s3:DeleteObjectVersionTagging"},
	{level: s3Object, method: "GET", sub: "acl", name: "GetObjectAcl", action: "s3:GetObjectAcl", versioned: "s3:GetObjectVersionAcl"},
	{level: s3Object, method: "PUT", sub: "acl", name: "PutObjectAcl", action: "s3:PutObjectAcl", versioned: "s3:PutObjectVersionAcl"},
	{level: s3Object, method: "GET", sub: "attributes", name: "GetObjectAttributes", action: "s3:GetObjectAttributes", versioned: "s3:GetObjectVersionAttributes"},
	{level: s3Object, method: "GET", sub: "retention", name: "GetObjectRetention", action: "s3:GetObjectRetention", versioned: "s3:GetObjectRetention"},
	{level: s3Object, method: "PUT", sub: "retention", name: "PutObjectRetention", action: "s3:PutObjectRetention", versioned: "s3:PutObjectRetention"},
	{level: s3Object, method: "GET", sub: "legal-hold", name: "GetObjectLegalHold", action: "s3:GetObjectLegalHold", versioned: "s3:GetObjectLegalHold"},
	{level: s3Object, method: "PUT", sub: "legal-hold", name: "PutObjectLegalHold", action: "s3:PutObjectLegalHold", versioned: "s3:PutObjectLegalHold"},
	{level: s3Object, method: "POST", sub: "uploads", name: "CreateMultipartUpload", action: "s3:PutObject"},
	{level: s3Object, method: "PUT", sub: "uploadId", params: []string{"partNumber"}, name: "UploadPart", action: "s3:PutObject"},
	{level: s3Object, method: "POST", sub: "uploadId", name: "CompleteMultipartUpload", action: "s3:PutObject"},
	{level: s3Object, method: "DELETE", sub: "uploadId", name: "AbortMultipartUpload", action: "s3:AbortMultipartUpload"},
	{level: s3Object, method: "GET", sub: "uploadId", params: []string{"max-parts", "part-number-marker"}, name: "ListParts", action: "s3:ListMultipartUploadParts"},
	{level: s3Object, method: "POST", sub: "restore", name: "RestoreObject", action: "s3:RestoreObject", versioned: "s3:RestoreObject"},
	{level: s3Object, method: "POST", sub: "select", params: []string{"select-type"}, name: "SelectObjectContent", action: "s3:GetObject"},
}

// matchS3 finds the one rule for a request at level with method and
// the query parameter names keys.
func matchS3(level s3Level, method string, keys []string) (rule s3Rule, versioned, ok bool) {
	var found []s3Rule
	for _, r := range s3Rules {
		if r.level != level || r.method != method || (r.sub != "" && !slices.Contains(keys, r.sub)) {
			continue
		}
		fits := true
		for _, k := range keys {
			switch {
			case k == r.sub, slices.Contains(r.params, k):
			case k == "versionId" && r.versioned != "":
			case r.response && strings.HasPrefix(k, "response-"):
			default:
				fits = false
			}
		}
		if fits {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		return s3Rule{}, false, false
	}
	return found[0], slices.Contains(keys, "versionId"), true
}

// s3VirtualHost matches an AWS S3 endpoint after a virtual-hosted
// bucket's name: s3, s3-fips, s3-external-1 or the legacy s3-REGION,
// then optionally dualstack and a region, then amazonaws.com(.cn). The
// region must look like one, so that a bucket named s3-fips is not taken
// for an endpoint.
var s3VirtualHost = regexp.MustCompile(`^(s3|s3-fips|s3-external-1|s3-[a-z]{2}(-[a-z]+)+-[0-9]{1,2})(\.dualstack)?(\.[a-z]{2}(-[a-z]+)+-[0-9]{1,2})?\.amazonaws\.com(\.cn)?$`)

// s3Target is the bucket and key req addresses; ok is false for an AWS
// host that is an S3 endpoint of another kind (access points, S3
// Control, Object Lambda, directory buckets) and for a path S3 would not
// read as a bucket name. The path is split on its '/' as sent, then each
// part is unescaped, as S3 reads it.
func s3Target(req *http.Request) (bucket, key string, ok bool) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	path := strings.TrimPrefix(req.URL.EscapedPath(), "/")
	rawBucket, rawKey, _ := strings.Cut(path, "/")
	if strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn") {
		if !s3VirtualHost.MatchString(host) {
			virtual := false
			for i := 0; i < len(host) && !virtual; i++ {
				if host[i] == '.' && s3VirtualHost.MatchString(host[i+1:]) {
					rawBucket, rawKey, virtual = host[:i], path, true
				}
			}
			if !virtual {
				return "", "", false
			}
		}
	}
	bucket, err := url.PathUnescape(rawBucket)
	if err != nil || (bucket != "" && !validBucket(bucket)) {
		return "", "", false
	}
	if key, err = url.PathUnescape(rawKey); err != nil {
		return "", "", false
	}
	return bucket, key, true
}

// validBucket accepts bucket names as S3 has them (lower-case letters,
// digits, '.' and '-'), and the upper-case letters and '_' of legacy
// us-east-1 buckets: nothing that would read as a wildcard in an ARN.
func validBucket(b string) bool {
	return len(b) <= 255 && allIn(b, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
}

func describeS3(req *http.Request, s Signed, op Operation) (Operation, error) {
	bucket, key, ok := s3Target(req)
	if !ok {
		return op, nil
	}
	query, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return op, unsupported("malformed query string")
	}
	var keys []string
	for k := range query {
		// x-id is the SDK's operation hint. X-Amz-* parameters sign a
		// presigned URL and carry its headers; on any other request they
		// are parameters Describe does not know.
		if k == "x-id" || s.Presigned && strings.HasPrefix(strings.ToLower(k), "x-amz-") {
			continue
		}
		keys = append(keys, k)
	}
	level := s3Object
	switch {
	case bucket == "" && key == "":
		level = s3Service
	case bucket == "":
		return op, nil
	case key == "":
		level = s3Bucket
	}
	rule, versioned, ok := matchS3(level, req.Method, keys)
	if !ok {
		return op, nil
	}
	part := partition(s.Region)
	bucketARN := "arn:" + part + ":s3:::" + bucket
	objectARN := bucketARN + "/" + key
	action := rule.action
	if versioned {
		action = rule.versioned
	}
	op.Name = rule.name
	switch {
	case rule.name == "ListObjects" && query.Get("list-type") == "2":
		op.Name = "ListObjectsV2"
	case rule.name == "PutObject" && req.Header.Values("X-Amz-Copy-Source") != nil:
		op.Name = "CopyObject"
	case rule.name == "UploadPart" && req.Header.Values("X-Amz-Copy-Source") != nil:
		op.Name = "UploadPartCopy"
	}
	switch level {
	case s3Service:
		op.Access = []Access{{Action: action, Resource: "*"}}
	case s3Bucket:
		if rule.name == "DeleteObjects" {
			return describeDeleteObjects(req, op, bucketARN)
		}
		op.Access = []Access{{Action: action, Resource: bucketARN}}
	case s3Object:
		op.Access = []Access{{Action: action, Resource: objectARN}}
	}
	if op.Name == "CopyObject" || op.Name == "UploadPartCopy" {
		src, err := copySource(req.Header.Values("X-Amz-Copy-Source"), part)
		if err != nil || src == (Access{}) {
			return Operation{Service: op.Service, Request: op.Request}, err
		}
		op.Access = append(op.Access, src)
	}
	if rule.name == "PutObject" || rule.name == "CreateMultipartUpload" {
		op.Access = append(op.Access, headerAccess(req.Header, objectARN)...)
	}
	return op, nil
}

// headerAccess is what the headers of an object write need besides
// s3:PutObject: tags, an ACL, object lock settings.
func headerAccess(h http.Header, objectARN string) []Access {
	var acc []Access
	add := func(action string) {
		if !slices.ContainsFunc(acc, func(a Access) bool { return a.Action == action }) {
			acc = append(acc, Access{Action: action, Resource: objectARN})
		}
	}
	for k := range h {
		switch k = strings.ToLower(k); {
		case k == "x-amz-tagging":
			add("s3:PutObjectTagging")
		case k == "x-amz-acl" || strings.HasPrefix(k, "x-amz-grant-"):
			add("s3:PutObjectAcl")
		case k == "x-amz-object-lock-mode" || k == "x-amz-object-lock-retain-until-date":
			add("s3:PutObjectRetention")
		case k == "x-amz-object-lock-legal-hold":
			add("s3:PutObjectLegalHold")
		}
	}
	slices.SortFunc(acc, func(a, b Access) int { return strings.Compare(a.Action, b.Action) })
	return acc
}

// copySource reads x-amz-copy-source, /bucket/key[?versionId=V] (URL
// encoded), as the s3:GetObject it needs. An access point or Outposts ARN
// source gives a zero Access: the operation is then unknown.
func copySource(values []string, part string) (Access, error) {
	if len(values) != 1 {
		return Access{}, unsupported("the request carries x-amz-copy-source more than once")
	}
	v := values[0]
	path, rawQuery, _ := strings.Cut(v, "?")
	path, err := url.PathUnescape(path)
	if err != nil {
		return Access{}, unsupported("malformed x-amz-copy-source")
	}
	path = strings.TrimPrefix(path, "/")
	if strings.HasPrefix(path, "arn:") {
		return Access{}, nil
	}
	bucket, key, _ := strings.Cut(path, "/")
	if bucket == "" || key == "" || !validBucket(bucket) {
		return Access{}, unsupported("malformed x-amz-copy-source: want /bucket/key")
	}
	action := "s3:GetObject"
	if rawQuery != "" {
		q, err := url.ParseQuery(rawQuery)
		if err != nil || len(q) != 1 || len(q["versionId"]) != 1 {
			return Access{}, unsupported("malformed x-amz-copy-source: the only query it takes is versionId")
		}
		action = "s3:GetObjectVersion"
	}
	return Access{Action: action, Resource: "arn:" + part + ":s3:::" + bucket + "/" + key}, nil
}

// describeDeleteObjects reads the keys a DeleteObjects request deletes:
// each needs s3:DeleteObject (s3:DeleteObjectVersion with a VersionId).
func describeDeleteObjects(req *http.Request, op Operation, bucketARN string) (Operation, error) {
	body, err := readBody(req)
	if err != nil {
		return op, err
	}
	if strings.Contains(strings.ToLower(req.Header.Get("Content-Encoding")), "aws-chunked") {
		if body, err = decodeUnsignedChunks(body); err != nil {
			return op, err
		}
	}
	var doc struct {
		XMLName xml.Name
		Objects []struct {
			Key       *string `xml:"Key"`
			VersionID string  `xml:"VersionId"`
		} `xml:"Object"`
	}
	if err := xml.NewDecoder(bytes.NewReader(body)).Decode(&doc); err != nil || doc.XMLName.Local != "Delete" {
		return op, unsupported("malformed DeleteObjects body: want <Delete><Object><Key>...</Key></Object>...</Delete>")
	}
	if len(doc.Objects) == 0 {
		return op, unsupported("DeleteObjects names no object")
	}
	op.Access = nil
	for _, o := range doc.Objects {
		if o.Key == nil {
			return Operation{Service: op.Service, Request: op.Request}, unsupported("malformed DeleteObjects body: an Object without a Key")
		}
		a := Access{Action: "s3:DeleteObject", Resource: bucketARN + "/" + *o.Key}
		if o.VersionID != "" {
			a.Action = "s3:DeleteObjectVersion"
		}
		if !slices.Contains(op.Access, a) {
			op.Access = append(op.Access, a)
		}
	}
	return op, nil
}

// decodeUnsignedChunks decodes an aws-chunked body whose chunks carry no
// signature (chunk-size[;ext] CRLF data CRLF ... 0 CRLF trailers CRLF).
func decodeUnsignedChunks(b []byte) ([]byte, error) {
	var out []byte
	for {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok {
			return nil, unsupported("malformed aws-chunked body")
		}
		sizeHex, ext, _ := bytes.Cut(line, []byte(";"))
		if len(ext) > 0 {
			return nil, unsupported("aws-chunked body with chunk signatures")
		}
		var n int
		if _, err := fmt.Sscanf(string(sizeHex), "%x", &n); err != nil || n < 0 || n > len(rest) {
			return nil, unsupported("malformed aws-chunked body")
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, rest[:n]...)
		b = rest[n:]
		if !bytes.HasPrefix(b, []byte("\r\n")) {
			return nil, unsupported("malformed aws-chunked body")
		}
		b = b[2:]
	}
}
