"""The ingesting side of newsbot: read articles, chunk them, embed the chunks, store them."""
