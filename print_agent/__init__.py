"""The print agent: a small program beside the operator's printer that leases print jobs from
the API over HTTPS, prints them once, and acknowledges them. It never imports `backend`.
(Built with the label work, issue 3.)"""

__version__ = "0.1.0"
