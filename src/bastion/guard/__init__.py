"""The runtime guard: the only part of bastion that serves. Nothing is imported here, so
`import bastion.guard.audit` does not pull the server."""
