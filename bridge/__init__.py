"""A Matrix application service that connects telephones (SIP/PSTN) to MatrixRTC calls."""

__version__ = "0.1.0"
