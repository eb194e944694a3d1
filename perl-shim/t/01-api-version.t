#!/usr/bin/perl
# api(): the highest supported storage API version inside the node's accepted range.
# Run: prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/01-api-version.t

use strict;
use warnings;

use Test::More;

use PVE::Storage;

my $class = 'PVE::Storage::Custom::IsolibPlugin';
my ($min, $max) = ($class->MIN_APIVER, $class->MAX_APIVER);
my $pick = \&PVE::Storage::Custom::IsolibPlugin::pick_api_version;

is($pick->(15, 6), 15, 'PVE 9.x (15/6): 15');
is($pick->(12, 3), 12, 'PVE 9.0 (12/3): 12');
is($pick->(11, 2), 11, 'PVE 8.4 (11/2): 11');
is($pick->(10, 1), 10, 'PVE 7.1-8.3 (10/1): 10');
is($pick->(20, 6), 15, 'a newer node that still accepts 15: 15');
is($pick->(9, 0), $max, 'an older node than supported: max, which the loader refuses');
is($pick->(22, 3), $max, 'a node that no longer accepts 15: max, which the loader refuses');
is($pick->(undef, undef), $max, 'no APIVER at all: max');

# Exhaustively: the answer is the highest supported version inside the range when there is one.
my $bad = 0;
for my $ver (1 .. 30) {
    for my $age (0 .. 12) {
        my ($lo, $hi) = ($ver - $age, $ver);
        my @ok = grep { $_ >= $lo && $_ <= $hi } ($min .. $max);
        my $want = @ok ? $ok[-1] : $max;
        my $got = $pick->($ver, $age);
        $bad++, diag("APIVER $ver APIAGE $age: got $got, want $want") if $got != $want;
    }
}
is($bad, 0, 'every APIVER/APIAGE pair from 1/0 to 30/12');

is($class->api(), 15, 'api() against the node (stand-in 15/6)');
{
    no warnings 'redefine';
    local *PVE::Storage::APIVER = sub () { 12 };
    local *PVE::Storage::APIAGE = sub () { 3 };
    is($class->api(), 12, 'api() reads APIVER/APIAGE at call time');
}
{
    no warnings 'redefine';
    local *PVE::Storage::APIVER = sub () { 13 };
    local *PVE::Storage::APIAGE;
    ok(!PVE::Storage->can('APIAGE'), 'APIAGE removed');
    is($class->api(), 13, 'a node without APIAGE: APIVER itself');
}
{
    no warnings 'redefine';
    local *PVE::Storage::APIVER = sub () { die "broken\n" };
    is($class->api(), $max, 'a failing APIVER does not break api()');
}

done_testing();
