"""HTTP layer: a thin Falcon app over the Supervisor (parse, call, serialize). Never imports torch or funasr."""
