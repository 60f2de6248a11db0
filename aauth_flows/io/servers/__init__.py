"""The reference servers (Agent Provider, Person Server, Access Server, sample resource) as
Starlette apps; ``aauth serve ap|ps|as|resource --config FILE`` runs one with uvicorn."""
