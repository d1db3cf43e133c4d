"""The test harness: loopback servers, fleets and a headless browser for tests and
benchmarks. Not in the wheel deployed to hosts (roles/install leaves it out), and
nothing outside tests/, bench/ and this package imports it."""
