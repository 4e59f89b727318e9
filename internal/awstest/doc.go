// Package awstest runs moto, AWS on loopback, for tests: RunMoto starts a
// moto server (the KMS tests use a plain one), and Start an AWS account for
// tests of minted AWS sessions and re-signed requests: moto's server in
// its IAM mode, so that
// every request's SigV4 signature is checked and its action authorized,
// with session policies evaluated as AWS evaluates them (see
// moto_session_policy.py, which moto alone does not do).
//
// Typical use:
//
//	acct := awstest.Start(t, awstest.Options{Bucket: "data", Objects: map[string]string{"a.txt": "hello"}})
//	// acct.AccessKeyID/SecretAccessKey may call sts:AssumeRole on acct.RoleARN;
//	// the role's own policy allows s3:*, so only a session policy narrows it.
package awstest
