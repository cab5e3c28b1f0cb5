"""Past one machine: a run's requests answered by batch engines (OpenAI's Batch API, ``vllm
run-batch`` through files, Ray Data), each answer stored in the response cache under the key a
direct call would use, so that the run then finishes from the cache."""
