"""Reading user data (`readers`) and turning encoded examples into batches (`batching`)."""
