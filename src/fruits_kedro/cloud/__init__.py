"""Cloud helpers: upload images to S3, run the packaged project on AWS EMR.

Credentials always come from the standard AWS chain (environment variables, AWS_PROFILE /
AWS_SHARED_CREDENTIALS_FILE, instance role); AWS_ENDPOINT_URL selects an S3-compatible server.
"""
