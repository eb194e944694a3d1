package PVE::Storage::DirPlugin;

# Test stand-in for pve-storage's DirPlugin: type `dir`, and the declaration of `path` (which
# in PVE lives here, not in the base, so plugins that use `path` list it in options() only).

use strict;
use warnings;

use base qw(PVE::Storage::Plugin);

sub type {
    return 'dir';
}

sub plugindata {
    return {
        content => [
            {
                images => 1, rootdir => 1, vztmpl => 1, iso => 1, backup => 1, snippets => 1,
                none => 1, import => 1,
            },
            { images => 1, rootdir => 1 },
        ],
    };
}

sub properties {
    return {
        path => { description => 'File system path.', type => 'string' },
        'create-subdirs' => { type => 'boolean', optional => 1 },
    };
}

sub options {
    return {
        path => { fixed => 1 },
        nodes => { optional => 1 },
        shared => { optional => 1 },
        disable => { optional => 1 },
        content => { optional => 1 },
        'content-dirs' => { optional => 1 },
        'create-subdirs' => { optional => 1 },
    };
}

1;
