#!/usr/bin/perl
# The Unix-socket HTTP client against a canned server: request bytes, chunked and
# Content-Length bodies, PVE error envelopes, and a server that never answers (the client
# gives up at its deadline instead of hanging).
# Run: prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/03-client.t

use strict;
use warnings;

use Test::More;

use File::Temp ();

use PVE::Isolib::Client;
use IsolibTest::Canned qw(canned_server json_response chunked_response requests);

my $tmp = File::Temp::tempdir(CLEANUP => 1);
my $sock = "$tmp/canned.sock";
my $client = PVE::Isolib::Client->new(socket => $sock, timeout => 5);
my $upid = 'UPID:n:1:2:3:d:x:u@p:';

canned_server(
    $sock,
    # Bytes after the announced length must not be taken as body.
    { response => json_response('200 OK', qq({"data":"$upid"})) . 'trailing garbage' },
    { response => chunked_response('200 OK', '{"data":[{"', qq(n":1,"t":"caf\xc3\xa9"}],"total":1})) },
    { response => json_response('400 Parameter verification failed.',
        '{"data":null,"errors":{"filename":"wrong file extension"},"message":"Parameter v.\n"}') },
    { response => "HTTP/1.1 401 No ticket\r\nContent-Length: 0\r\n\r\n" },
    { response => undef },
);

my $res = $client->request('POST', '/api2/json/x', json => { a => 'b' });
is($res->{code}, 200, 'status code');
is($res->{data}->{data}, $upid, 'body cut at Content-Length');

my ($lines, $total) = $client->task_log($upid, 4);
is_deeply($lines, [{ n => 1, t => "caf\x{e9}" }], 'chunked body, UTF-8 decoded');
is($total, 1, 'total from the envelope');

eval { $client->api('GET', '/api2/json/y') };
is($@, "isolib daemon: Parameter v. (filename: wrong file extension)\n",
    'error message with the parameter errors');
eval { $client->api('GET', '/api2/json/y') };
is($@, "isolib daemon: No ticket\n", 'no body: the reason phrase');

my $reqs = requests($sock);
like($reqs->[0], qr{^POST /api2/json/x HTTP/1\.1\r\n}, 'request line');
like($reqs->[0], qr{\r\nConnection: close\r\n}, 'Connection: close');
like($reqs->[0], qr{\r\nContent-Type: application/json\r\n}, 'JSON body');
like($reqs->[0], qr{\r\nContent-Length: 9\r\n\r\n\{"a":"b"\}$}, 'Content-Length and body');
unlike($reqs->[0], qr{Authorization|Cookie}i, 'no credentials sent');
like($reqs->[1], qr{^GET /api2/json/nodes/localhost/tasks/UPID:n:1:2:3:d:x:u\@p:/log\?limit=0&start=4 },
    'log request: UPID path and query');

my $slow = PVE::Isolib::Client->new(socket => $sock, timeout => 1);
eval { $slow->request('GET', '/api2/json/z') };
is($@, "isolib daemon at '$sock' did not answer 'GET /api2/json/z' within 1s\n",
    'a silent server: the client gives up at its deadline');

unlink($sock);
eval { $client->request('GET', '/api2/json/z') };
is($@, "isolib daemon not reachable at '$sock': No such file or directory\n", 'no socket');

done_testing();
