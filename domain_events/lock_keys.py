"""The keys of the backbone's advisory locks (arbitrary, fixed 64-bit numbers), in a module that
needs no Django: operators' queries and tools outside the project's processes can name them."""

# Transaction lock of the pruning relay (one at a time applies retention and makes partitions).
PRUNE_LOCK = 7246183015249174628
# Session lock of the relay that moves the position readers (`relay`).
READERS_LOCK = 7246183015249174629
