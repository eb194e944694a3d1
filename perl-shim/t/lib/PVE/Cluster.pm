package PVE::Cluster;

# Test stand-in for pve-cluster's PVE::Cluster (the real one needs the XS PVE::IPCC and a
# running pmxcfs). Only the cluster file registry is provided: cfs_register_file records a
# parser, cfs_read_file reads "$CFS_DIR/<name>" and runs it, as pmxcfs-backed reads of
# /etc/pve/<name> do. Tests point $CFS_DIR at their own directory.

use strict;
use warnings;

use Exporter qw(import);

our @EXPORT_OK = qw(cfs_register_file cfs_read_file);

our $CFS_DIR = '/etc/pve';

my $registry = {};

sub cfs_register_file {
    my ($filename, $parser, $writer) = @_;
    $registry->{$filename} = { parser => $parser, writer => $writer };
    return;
}

sub cfs_read_file {
    my ($filename) = @_;

    my $path = "$CFS_DIR/$filename";
    my $raw = '';
    if (open(my $fh, '<', $path)) {
        local $/;
        $raw = <$fh> // '';
        close($fh);
    } elsif (!$!{ENOENT}) {
        die "unable to read '$path' - $!\n";
    }

    my $entry = $registry->{$filename};
    # Unregistered files (datacenter.cfg here) come back as an empty config, as a parser that
    # finds no keys would return.
    return {} if !$entry;
    return $entry->{parser}->($path, $raw);
}

1;
