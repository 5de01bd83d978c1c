"""The stage functions: each takes a RunContext and returns a StageResult; conf/pipeline names them."""
