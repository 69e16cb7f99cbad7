print("prima-convert")
