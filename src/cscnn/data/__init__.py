"""Reading, writing, generating and importing worlds that follow the data contract (`cscnn.data.schema`)."""
