"""gnt-node list-drbd on the one-node cluster (no DRBD here: the listing is empty)."""

HEADER = "Node Minor Instance Disk Role PeerNode"


def test_list_drbd_empty_and_unknown_node(cluster):
    assert cluster.run("gnt-node", "list-drbd", "localhost").stdout == HEADER + "\n"
    assert cluster.run("gnt-node", "list-drbd", "--separator=|", "localhost").stdout == \
        HEADER.replace(" ", "|") + "\n"
    assert cluster.run("gnt-node", "list-drbd", "--no-headers", "localhost").stdout == ""
    bad = cluster.run("gnt-node", "list-drbd", "nosuch", check=False)
    assert bad.returncode == 1 and bad.stdout == ""
    assert "Node 'nosuch' not known" in bad.stderr
    assert "error type: unknown_entity" in bad.stderr
    usage = cluster.run("gnt-node", "list-drbd", check=False)
    assert usage.returncode != 0
