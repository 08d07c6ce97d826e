"""Corral: a cluster virtual server manager compatible with the Ganeti ecosystem."""
