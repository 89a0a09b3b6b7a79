"""Django's task contract, stated as tests, run against every backend tandem ships."""
